"""The pytest plugin: its hooks, the session that holds a run's state, and the gate's shipped tests (suite)."""

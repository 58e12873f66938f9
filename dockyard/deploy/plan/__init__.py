"""Deciding what to do: observe what the engine and the disk hold, then plan the difference (a pure function)."""

"""CrossFlow reproduction library."""

"""Plain decisions with no I/O: policy, recommending, timing, placing, tracking, the lifecycle."""

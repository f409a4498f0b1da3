"""The hardware-in-the-loop suite: the same tests against the simulator or a real rig."""

"""Virtual field devices on pseudo-terminal RS-485 buses."""

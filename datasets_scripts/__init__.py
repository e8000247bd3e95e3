"""datasets_scripts package of tango-af (filled by later issues)."""

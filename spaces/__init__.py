"""spaces package of tango-af (filled by later issues)."""

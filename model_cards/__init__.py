"""model_cards package of tango-af (filled by later issues)."""

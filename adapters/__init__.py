"""Pure-Python codecs, transports and canonical maps. No Django imports here."""

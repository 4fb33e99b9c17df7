"""The fault suite: real processes and sockets, broken on purpose (``make faults``)."""

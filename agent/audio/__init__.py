"""Audio primitives shared by telephony, the dialog pipeline and callsim: pure numpy, no I/O but WAV files."""

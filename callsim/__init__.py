"""callsim: places scripted SIP calls against any voice agent and measures them."""

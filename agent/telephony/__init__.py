"""Call transports (SIP via pjsua2, WebRTC via aiortc) behind one call-leg interface."""

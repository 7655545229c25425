"""The call session: turn-taking, barge-in, the dialog manager and dialplans."""

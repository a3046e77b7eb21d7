"""The control API: `podctl run` serves it on a unix socket; the other verbs are its clients."""

"""The host podctl runs on: process limits and the service manager.

Every module here uses only the standard library (the layer contract keeps it so), so
the rest of podctl can use them anywhere and they stay testable without an engine:

- `limits`: the open-files limit, raised to the hard limit at start.
- `systemd`: the text of the unit `podctl systemd unit` prints.
- `notify`: an sd_notify client on a plain datagram socket (READY, STATUS, WATCHDOG,
  RELOADING, STOPPING, EXTEND_TIMEOUT_USEC, the file descriptor store).
- `listenfds`: the sockets systemd hands back through $LISTEN_FDS/$LISTEN_FDNAMES.
- `journal`: log formatting for the journal (`<N>` priority prefixes) or JSON lines.
"""

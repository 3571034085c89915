"""RFC 7143 (iSCSI) as a sans-IO state machine: bytes in, events out, bytes to send.

No sockets, no asyncio, no rados here.  The pieces, bottom up:

* ``pdu`` -- one class per opcode, BHS/AHS codec; ``framing`` -- stream splitting, padding,
  CRC32C digests, zero-copy receive buffers;
* ``keys`` -- every text key in one table; ``negotiation`` -- the generic reducer;
  ``chap`` -- CHAP MD5/SHA-1/SHA-256/SHA3-256, one-way and mutual;
* ``login`` -- the target's login state machine (asks a LoginAuthority for decisions);
* ``connection`` (+ ``control``, ``window``, ``task``, ``states``, ``events``, ``text``) --
  full feature phase of one connection;
* ``initiator`` -- a small initiator for tests and scripted scenarios;
* ``errors`` -- LocalProtocolError (our misuse) vs RemoteProtocolError (peer's fault).
"""

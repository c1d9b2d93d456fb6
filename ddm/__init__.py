"""Ailuro's data management: checksums, storage elements and transfer protocols.

The pilot uses three pieces today: :mod:`ddm.checksum` (adler32), :mod:`ddm.protocols` (one plugin
per URL scheme: stat, checksum, copy in/out, delete) and :mod:`ddm.storage` (storage-element names
resolved to base URLs). Servers reading a location a client named use three more:
:mod:`ddm.locations` (a location is accepted only inside a configured storage element),
:mod:`ddm.bounded` (reads with an overall deadline and a byte cap) and :mod:`ddm.tarballs`
(tarballs walked as a stream with unpacked-size and member caps). The catalog and the transfer
agent come later and build on the same pieces.
"""

from __future__ import annotations

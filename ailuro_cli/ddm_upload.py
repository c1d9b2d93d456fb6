"""``ailuro ddm upload``: put local files on a storage element and register them (Rucio's upload).

Apart from ``ailuro_cli/ddm.py`` because it moves bytes itself, with the DDM kit's protocol plugins
(``ddm.protocols``), while the other ``ddm`` commands only talk to the dispatcher.

Order (as Rucio does it): register first, with the local size and adler32 (a name already used for
other content is refused before anything is copied); copy to ``<endpoint>/<scope>/<lfn>``; compare
the SE's own adler32 with the local one (a mismatch deletes the copy); then ask the dispatcher to
verify the replica, which the DDM agent marks ``available`` once its checksum at the SE matched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ailuro.errors import InvalidArgument, Unavailable
from ailuro_cli._common import cell, console, make_client, print_json, reported_errors
from ailuro_cli.ddm import JSON_OPT, ddm_app
from ddm.checksum import adler32_of_file
from ddm.protocols import protocol_for
from ddm.storage import se_file_url


@ddm_app.command("upload")
def upload(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(..., help="Local files; each is stored under its own name (the lfn)."),
    se: str = typer.Option(..., "--se", help="Storage element to upload to."),
    dataset: str = typer.Option(..., "--dataset", help="scope:name the files are registered in."),
    as_json: bool = JSON_OPT,
) -> None:
    """Upload files to an SE and register them: copied, checksum compared at the SE, verified by the agent."""
    with reported_errors():
        scope = dataset.partition(":")[0]
        local = [_measure(f, i) for i, f in enumerate(files)]
        with make_client(ctx) as client:
            endpoints = list(client.ddm.storage_element(se).endpoints)
            if not endpoints:
                raise InvalidArgument(f"storage element {se!r} has no endpoint", field="--se")
            client.ddm.register_files(dataset, se, local)
            rows = []
            for entry, path in zip(local, files, strict=True):
                url = se_file_url(endpoints[0], scope=scope, lfn=entry["lfn"])
                _copy_checked(path, url, entry["adler32"])
                verify_ids = client.ddm.verify(f"{scope}:{entry['lfn']}", se=se)
                rows.append({**entry, "se": se, "pfn": url, "verify_request": verify_ids[0]})
    if as_json:
        print_json(rows)
    else:
        for r in rows:
            console.print(cell(f"uploaded {r['lfn']} ({r['size']} bytes, adler32 {r['adler32']}) to {r['pfn']}"))


def _measure(path: Path, i: int) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidArgument(f"no such file: {path}", field=f"files[{i}]")
    return {"lfn": path.name, "size": path.stat().st_size, "adler32": adler32_of_file(path)}


def _copy_checked(path: Path, url: str, adler32: str) -> None:
    """Copy to the SE and compare the SE's adler32 with the local one; a bad copy is deleted."""
    proto = protocol_for(url)
    proto.copy_out(path, url)
    got = proto.checksum(url)
    if got != adler32:
        proto.delete(url)
        raise Unavailable(f"{url}: adler32 at the SE is {got}, the local file's {adler32}; the copy was deleted")

"""Render docs/settings.md from the settings table (``python -m gateway.settings_doc``)."""

from __future__ import annotations

import sys

from gateway import settings

SECTIONS = {
    "config": "System settings.",
    "target": "Target controls (overridable per target with `controls`) and disk controls "
              "(overridable per disk).",
    "device_status": "Thresholds of the device health watcher.",
}


def render() -> str:
    out = ["# `iscsi-gateway.cfg` settings", "",
           "Generated from `gateway/settings.py` by `python -m gateway.settings_doc`; a test keeps "
           "it current.", "",
           "The file is read from `--cfg PATH`, else `$ISCSI_GATEWAY_CFG`, else "
           "`/etc/ceph/iscsi-gateway.cfg`. Booleans accept true/false, yes/no, 1/0, on/off. An "
           "invalid value stops the program with a message naming the key and the allowed range; "
           "an unknown key is logged as a warning. A value `config://<key>` is read from the "
           "monitors' config-key store. Keys marked *extension* are ours; the rest are "
           "ceph-iscsi's, with its defaults.", ""]
    for section, blurb in SECTIONS.items():
        out += [f"## [{section}]", "", blurb, "", "| key | type | range | default | meaning |",
                "|---|---|---|---|---|"]
        for s in settings.ALL_SETTINGS:
            if s.section != section:
                continue
            rng = s.range_text().strip() or ("/".join(s.choices) if s.choices else "")
            default = s.format(s.default) if s.default not in ("", []) else '""'
            meaning = s.help + (" *(extension)*" if s.extension else "")
            out.append(f"| `{s.name}` | {s.kind} | {rng} | `{default}` | {meaning} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())

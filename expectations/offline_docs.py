"""GX Data Docs that work offline (政务外网 and intranets have no CDN).

GX writes every page with style sheets, scripts and fonts from CDNs and its logo from S3. After
a build, `make_offline(docs_dir)` copies the vendored copies of the same libraries
(govdata/static/vendor, see its README for versions and licences) to `<docs>/static/vendor/` and
rewrites each page's references to them (relative, so the folder can be copied or served
anywhere); `integrity`/`crossorigin` attributes go with the CDN (a `file://` page cannot make
a CORS request). GX's logo comes from the docs' own static/images.

`remote_references(text)` lists what a page would still load from the network: scripts, style
sheets, fonts and images with an http(s) URL (plain links to web pages are not loads).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import govdata

log = logging.getLogger(__name__)

VENDOR_DIR = Path(govdata.__file__).resolve().parent / "static" / "vendor"

# CDN URL as GX writes it -> file under static/vendor/
CDN_TO_VENDOR = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        "popper.js-1.12.9/dist/umd/popper.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1/dist/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1/dist/js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table-1.19.1/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table-1.19.1/dist/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker-1.9.0/dist/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker-1.9.0/dist/js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark-1.1.0/dist/css/bootstrap-prefers-dark.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome-free-6.6.0/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.33.1/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.23.0/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.29.0/build/vega-embed.min.js",
}
# GX's logos on S3 (with a cache-busting ?d=… query) -> the docs' own static/images
_GX_LOGO = re.compile(r"https://great-expectations-web-assets\.s3[^\"')\s]*/(?:logo-long|full_logo_dark)\.png(?:\?[^\"')\s]*)?")
_SRI = re.compile(r"""\s+(?:integrity|crossorigin)=(?:"[^"]*"|'[^']*'|[^\s>]+)""")
_TAG = re.compile(r"<(script|link|img)\b[^>]*>", re.IGNORECASE)

# What a page loads: <script src>, <link href> (style sheets, icons, fonts), <img src>, srcset,
# CSS url(...) and @import, each with an http(s) or protocol-relative URL.
_REMOTE = [
    re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]+)", re.IGNORECASE),
    re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]+)", re.IGNORECASE),
    re.compile(r"<(?:img|source|image|video|audio|iframe|embed)\b[^>]*\b(?:src|srcset|href|xlink:href)\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]+)", re.IGNORECASE),
    re.compile(r"url\(\s*[\"']?((?:https?:)?//[^\"')\s]+)", re.IGNORECASE),
    re.compile(r"@import\s+[\"']((?:https?:)?//[^\"']+)", re.IGNORECASE),
]


def remote_references(text: str) -> list[str]:
    """Every URL the page would fetch from the network (not plain <a href> links)."""
    found: list[str] = []
    for pattern in _REMOTE:
        found += pattern.findall(text)
    return found


def _rewrite(text: str, to_root: str) -> str:
    """One page (or style sheet) with CDN references pointing at static/vendor/ under `to_root`."""
    def strip_sri(match: re.Match) -> str:
        tag = match.group(0)
        return _SRI.sub("", tag) if any(cdn in tag for cdn in CDN_TO_VENDOR) else tag

    text = _TAG.sub(strip_sri, text)
    for cdn in sorted(CDN_TO_VENDOR, key=len, reverse=True):   # vega-lite before vega
        target = f"{to_root}static/vendor/{CDN_TO_VENDOR[cdn]}"
        text = re.sub(re.escape(cdn) + r"(?=[\"'\s>)])", target, text)
    return _GX_LOGO.sub(f"{to_root}static/images/logo-long.png", text)


def copy_vendor(docs_dir: Path) -> Path:
    target = Path(docs_dir) / "static" / "vendor"
    shutil.copytree(VENDOR_DIR, target, dirs_exist_ok=True)
    return target


def make_offline(docs_dir: str | Path) -> dict:
    """Vendored libraries next to the docs and every page pointed at them; returns counts and
    any reference still remote (logged: a GX upgrade may add a CDN that is not vendored yet)."""
    docs_dir = Path(docs_dir)
    copy_vendor(docs_dir)
    pages, left = 0, {}
    for path in sorted(list(docs_dir.rglob("*.html")) + list((docs_dir / "static" / "styles").glob("*.css"))):
        rel_dir = path.parent.relative_to(docs_dir)
        depth = 0 if str(rel_dir) == "." else len(rel_dir.parts)
        to_root = "../" * depth
        if path.suffix == ".css":   # static/styles/x.css: the docs root is two levels up
            to_root = os.path.relpath(docs_dir, path.parent).replace(os.sep, "/") + "/"
        text = path.read_text(encoding="utf-8")
        new = _rewrite(text, to_root)
        if new != text:
            path.write_text(new, encoding="utf-8")
        pages += path.suffix == ".html"
        remaining = remote_references(new)
        if remaining:
            left[str(path.relative_to(docs_dir))] = remaining
    if left:
        log.warning("Data Docs still load from the network: %s", left)
    return {"pages": pages, "remote_left": left}

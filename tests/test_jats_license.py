"""License normalisation and the commercial flag (docs/licenses.md), on synthetic and real spellings."""

from __future__ import annotations

import csv
import re

import pytest
from lxml import etree

from pipeline.jats import parse_article
from pipeline.jats.license import COMMERCIAL, extract_license, from_text, from_url

XL = 'xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:ali="http://www.niso.org/schemas/ali/1.0/"'


def lic(perms_inner: str, outside: str = ""):
    meta = etree.fromstring(f"<article-meta {XL}>{outside}<permissions>{perms_inner}</permissions></article-meta>")
    return extract_license(meta)


@pytest.mark.parametrize(
    "url, name",
    [
        ("http://creativecommons.org/licenses/by/4.0/", "CC BY"),
        ("https://creativecommons.org/licenses/by/2.0", "CC BY"),
        ("https://creativecommons.org/licenses/by-nc/3.0/", "CC BY-NC"),
        ("http://creativecommons.org/licenses/by-nc-nd/4.0/legalcode", "CC BY-NC-ND"),
        ("http://creativecommons.org/licenses/by-nc-sa/3.0/deed.en", "CC BY-NC-SA"),
        ("https://creativecommons.org/licenses/by-sa/4.0/", "CC BY-SA"),
        ("https://creativecommons.org/licenses/by-nd/4.0/", "CC BY-ND"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0"),
        ("http://creativecommons.org/publicdomain/mark/1.0/", "public domain"),
        ("http://www.nature.com/authors/editorial_policies/license.html#terms", None),
    ],
)
def test_from_url(url, name):
    assert from_url(url) == name


@pytest.mark.parametrize(
    "text, name",
    [
        ("distributed under the terms of the Creative Commons Attribution License", "CC BY"),
        ("Creative Commons Attribution Non-Commercial License", "CC BY-NC"),
        ("Creative Commons Attribution-NonCommercial-NoDerivs 4.0 International License", "CC BY-NC-ND"),
        ("Creative Commons Attribution-Noncommercial-Share Alike 3.0 Unported", "CC BY-NC-SA"),
        ("Attribution–Noncommercial–Share Alike–No Mirror Sites license", "CC BY-NC-SA"),
        ("Creative Commons Attribution (CC BY) license", "CC BY"),
        ("Publication of EHP lies in the public domain", "public domain"),
    ],
)
def test_from_text(text, name):
    assert from_text(text)[0] == name


def test_href_on_license_element():
    assert lic('<license xlink:href="http://creativecommons.org/licenses/by-nc/4.0/"><license-p>x</license-p></license>').name == "CC BY-NC"


def test_ali_license_ref():
    r = lic("<license><ali:license_ref>https://creativecommons.org/licenses/by/4.0/</ali:license_ref></license>")
    assert (r.name, r.url, r.commercial) == ("CC BY", "https://creativecommons.org/licenses/by/4.0/", True)


def test_ext_link_inside_license_p():
    r = lic('<license><license-p>Under <ext-link xlink:href="https://creativecommons.org/licenses/by-nc-nd/4.0/">this</ext-link>.</license-p></license>')
    assert r.name == "CC BY-NC-ND" and r.commercial is False


def test_license_type_vocabulary_as_fallback():
    assert lic('<license license-type="cc-by-nc"><license-p>Open.</license-p></license>').name == "CC BY-NC"
    assert lic('<license license-type="creativeCommonsBy-nc-nd"><license-p>Open.</license-p></license>').name == "CC BY-NC-ND"


def test_copyright_statement_only():
    r = lic("<copyright-statement>An open-access article under the Creative Commons Attribution License.</copyright-statement>")
    assert r.name == "CC BY" and r.url is None


def test_copyright_statement_outside_permissions_nlm23():
    r = lic("", outside="<copyright-statement>Open access under the Creative Commons Attribution License.</copyright-statement>")
    assert r.name == "CC BY"


def test_cc_by_plus_cc0_for_data_is_cc_by():
    r = lic('<license xlink:href="http://creativecommons.org/licenses/by/2.0"><license-p>The Creative Commons Public Domain Dedication waiver '
            '(<ext-link xlink:href="http://creativecommons.org/publicdomain/zero/1.0/">CC0</ext-link>) applies to the data.</license-p></license>')
    assert r.name == "CC BY"


def test_contradictory_text_takes_the_more_restrictive():
    # Real PMC3123035: "Creative Commons Attribution 3.0 License (by-nc 3.0)".
    assert lic("<license><license-p>licensed under a Creative Commons Attribution 3.0 License (by-nc 3.0).</license-p></license>").name == "CC BY-NC"


def test_publisher_terms_and_none():
    assert lic("<license><license-p>Users may view, print, copy for academic research.</license-p></license>").name == "other"
    assert lic("<copyright-statement>© Springer 2007</copyright-statement>").name == "none"
    assert lic("").commercial is False


def test_commercial_set():
    assert {"public domain", "CC0", "CC BY", "CC BY-SA", "CC BY-ND"} == COMMERCIAL


def _family(manifest_license: str) -> str:
    m = manifest_license
    if m.startswith("none"):
        return "none"
    if m.startswith("publisher terms"):
        return "other"
    if m.startswith("Public Domain"):
        return "public domain"
    return re.match(r"(CC BY(?:-[A-Z]+)*|CC0)", m).group(1)


# Where our reading differs from MANIFEST.tsv, on purpose (see docs/licenses.md).
OVERRIDES = {"PMC3123035.xml": "CC BY-NC"}  # text says "Attribution 3.0 License (by-nc 3.0)"


@pytest.mark.shared_data
def test_every_real_sample_license(shared_sample):
    rows = list(csv.DictReader((shared_sample / "MANIFEST.tsv").read_text().splitlines(), delimiter="\t"))
    assert len(rows) == 83
    wrong = []
    for row in rows:
        if row["license"] == "license":
            continue
        r = parse_article((shared_sample / row["file"]).read_bytes(), row["file"], min_tokens=10**6)
        want = OVERRIDES.get(row["file"], _family(row["license"]))
        if r.article.license != want:
            wrong.append((row["file"], row["license"], r.article.license))
        assert r.article.commercial == (r.article.license in COMMERCIAL)
    assert wrong == []

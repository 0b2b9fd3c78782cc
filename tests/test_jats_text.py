"""The inline-text policy: words never glued, no spurious spaces, formulas/citations/footnotes per docs/parse.md."""

from __future__ import annotations

import pytest
from lxml import etree

from pipeline.jats.text import inline_text, normalize, tex_text

NS = 'xmlns:mml="http://www.w3.org/1998/Math/MathML" xmlns:xlink="http://www.w3.org/1999/xlink"'


def text(p_inner: str) -> str:
    return inline_text(etree.fromstring(f"<p {NS}>{p_inner}</p>"))


@pytest.mark.parametrize(
    "xml, expected",
    [
        ("The <italic>E. coli</italic> strain", "The E. coli strain"),
        ("The<italic> E. coli </italic>strain", "The E. coli strain"),
        ("<bold>Results:</bold> we found", "Results: we found"),
        ("CD4<sup>+</sup> T cells", "CD4+ T cells"),
        ("H<sub>2</sub>O and CO<sub>2</sub>", "H2O and CO2"),
        ("10<sup>6</sup> cells, 10<sup>−3</sup> M", "10^6 cells, 10^−3 M"),
        ("Na<sup>+</sup>/K<sup>+</sup>-ATPase", "Na+/K+-ATPase"),
        ("ion y3<sup>+1</sup> and Ca<sup>2+</sup>", "ion y3+1 and Ca2+"),
        ("trans<italic>membrane</italic>", "transmembrane"),
        ("<sc>d</sc>-glucose", "d-glucose"),
        ("see <ext-link ext-link-type='uri' xlink:href='http://x.org'>http://x.org</ext-link>.", "see http://x.org."),
        ("a\n   b\t\tc", "a b c"),
        ("Non\u00a0breaking\u2009thin", "Non breaking thin"),
    ],
)
def test_inline_markup_never_glues_or_splits_words(xml, expected):
    assert text(xml) == expected


def test_citations_kept_as_printed():
    assert text('as shown [<xref ref-type="bibr" rid="b1">1</xref>, <xref ref-type="bibr" rid="b2">2</xref>].') == "as shown [1, 2]."
    assert text('(<xref ref-type="bibr" rid="b1">Smith et al., 2010</xref>)') == "(Smith et al., 2010)"


def test_superscript_citations_become_bracketed():
    assert text('shown previously<sup><xref ref-type="bibr" rid="b1">1</xref>,<xref ref-type="bibr" rid="b2">2</xref></sup>.') == "shown previously [1,2]."
    assert text('shown previously<xref ref-type="bibr" rid="b3"><sup>3</sup></xref> and more') == "shown previously [3] and more"
    assert text('in mice<sup>[<xref ref-type="bibr" rid="b4">4</xref>–<xref ref-type="bibr" rid="b6">6</xref>]</sup>, but') == "in mice [4–6], but"


def test_adjacent_citations_are_not_glued():
    # PMC3841568: "[<xref>1</xref><xref>3</xref>]" used to read "[13]".
    assert text('established.[<xref ref-type="bibr" rid="b1">1</xref><xref ref-type="bibr" rid="b3">3</xref>] HRD') \
        == "established.[1,3] HRD"
    assert text('[<xref ref-type="bibr">1</xref><xref ref-type="bibr">2</xref><xref ref-type="bibr">4</xref>]') == "[1,2,4]"
    assert text('shown<sup><xref ref-type="bibr" rid="b1">1</xref><xref ref-type="bibr" rid="b3">3</xref></sup>.') == "shown [1,3]."
    # PMC13255524: only a newline between two author-year citations.
    assert text('Dittmar et al. <xref ref-type="bibr">2008a</xref>\n<xref ref-type="bibr">2014</xref>; Kidd') \
        == "Dittmar et al. 2008a, 2014; Kidd"
    # Unchanged: a separator already there, an empty xref, a figure reference, the <xref><sup> form.
    assert text('[<xref ref-type="bibr">1</xref>, <xref ref-type="bibr">2</xref>]') == "[1, 2]"
    assert text('<sup><xref ref-type="bibr">14</xref><xref ref-type="bibr"/>–<xref ref-type="bibr">16</xref></sup>') == "[14–16]"
    assert text('(<xref ref-type="bibr">1</xref><xref ref-type="fig">Fig. 2</xref>)') == "(1Fig. 2)"
    assert text('a<xref ref-type="bibr"><sup>1</sup></xref><xref ref-type="bibr"><sup>3</sup></xref> b') == "a [1] [3] b"


def test_footnote_marks_dropped():
    assert text('patients<xref ref-type="fn" rid="f1">a</xref> were<xref ref-type="table-fn" rid="t1"><sup>*</sup></xref> seen') == "patients were seen"


def test_floats_and_notes_excluded():
    xml = ('Doses are in Table 1.<table-wrap><label>Table 1</label><caption><p>Doses</p></caption>'
           '<table><tr><td>cell</td></tr></table></table-wrap> See Figure 1.<fig><caption><p>cap</p></caption></fig>'
           '<fn><p>note</p></fn><supplementary-material><p>supp</p></supplementary-material>')
    assert text(xml) == "Doses are in Table 1. See Figure 1."


def test_tex_preferred_and_document_wrapper_removed():
    xml = ('We fit <inline-formula><alternatives><tex-math>\\documentclass[12pt]{minimal}\\usepackage{amsmath}'
           '\\begin{document}$$y=\\beta x$$\\end{document}</tex-math><mml:math><mml:mi>y</mml:mi></mml:math>'
           '</alternatives></inline-formula> here.')
    assert text(xml) == "We fit $y=\\beta x$ here."


def test_mathml_alttext_then_characters():
    assert text('if <inline-formula><mml:math alttext="p &lt; 0.05"><mml:mi>p</mml:mi></mml:math></inline-formula>, then') == "if p < 0.05, then"
    assert text('for <inline-formula><mml:math><mml:msub><mml:mi>x</mml:mi><mml:mi>i</mml:mi></mml:msub></mml:math></inline-formula> in') == "for xi in"


def test_display_formula_set_apart_and_label_dropped():
    xml = 'energy<disp-formula><label>(1)</label><tex-math>E = mc^2</tex-math></disp-formula>where c is'
    assert text(xml) == "energy $E = mc^2$ where c is"


def test_nested_list_and_breaks_separated():
    assert text("Steps:<list><list-item><p>mix</p></list-item><list-item><p>heat</p></list-item></list>then cool.") == "Steps: mix heat then cool."
    assert text("line one<break/>line two") == "line one line two"


def test_separator_never_before_closing_punctuation():
    assert text("value (<disp-formula><tex-math>x</tex-math></disp-formula>), next") == "value ($x$), next"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  plain text, single spaces  ", "plain text, single spaces"),  # fast path: already collapsed
        ("two  spaces", "two spaces"),
        ("no\u00a0break\u2009thin\nline\tand\x1ccontrol", "no break thin line and control"),
        ("see\u2028[1]\u2028, then (\u2028x\u2028) and\u2028\u2028end\u2028.", "see [1], then (x) and end."),
        ("\u2028\u2028", ""),
    ],
)
def test_normalize_whitespace_and_soft_separators(raw, expected):
    # Every whitespace character but " " must take the slow path, or it would survive in the text.
    assert normalize(raw) == expected


def test_unexpanded_entity_reference_dropped():
    from pipeline.jats.xml import parse_xml

    root = parse_xml(b"<article><p>a &#169; b</p></article>")
    assert inline_text(root[0]) == "a © b"


def test_tex_text_plain():
    assert tex_text("$x$") == "$x$"
    assert tex_text("") == ""


def test_namespaced_inline_elements():
    p = etree.fromstring('<p xmlns="urn:jats">The <italic>E. coli</italic> strain<xref ref-type="fn">1</xref>.</p>')
    assert inline_text(p) == "The E. coli strain."

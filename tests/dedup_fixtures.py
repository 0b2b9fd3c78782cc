"""Hand-written fixture text for the dedup and decontamination tests (no real article is copied)."""

from __future__ import annotations

import random

# Three unrelated paragraphs of realistic length (~120-150 words), each with numbers and several sentences.
BASE = {
    "bp": (
        "We enrolled 48 adults with resistant hypertension from three outpatient clinics between 2015 and 2018. "
        "Ambulatory blood pressure was recorded over 24 hours at baseline and after twelve weeks of treatment. "
        "Patients were randomly assigned to spironolactone 25 mg daily or to placebo, in addition to their usual "
        "regimen of at least three antihypertensive drugs. The primary outcome was the change in mean daytime "
        "systolic pressure. Secondary outcomes included night-time pressure, serum potassium and estimated "
        "glomerular filtration rate. Spironolactone lowered daytime systolic pressure by 9.8 mmHg more than "
        "placebo, and the effect was consistent across subgroups defined by age, sex and baseline renal function. "
        "Hyperkalaemia above 5.5 mmol/L occurred in two patients, both of whom had diabetes."
    ),
    "tb": (
        "Sputum samples were decontaminated with N-acetyl-L-cysteine and sodium hydroxide before culture on "
        "Lowenstein-Jensen medium and in liquid medium. Cultures were incubated at 37 degrees for up to eight "
        "weeks and examined weekly for growth. Isolates identified as Mycobacterium tuberculosis were tested for "
        "susceptibility to isoniazid and rifampicin with the proportion method, and discordant results were "
        "repeated with a line probe assay. Of the 312 isolates, 27 were resistant to isoniazid alone and 11 were "
        "multidrug resistant. Resistance was more frequent among previously treated patients than among new "
        "cases, and it clustered in two districts served by the same referral laboratory. These findings support "
        "routine molecular testing at diagnosis in both districts."
    ),
    "mri": (
        "Brain magnetic resonance imaging was performed on a 3 tesla scanner with a 32-channel head coil. "
        "The protocol comprised sagittal T1-weighted, axial T2-weighted, fluid-attenuated inversion recovery and "
        "diffusion-weighted sequences, followed by contrast-enhanced T1-weighted images after a single dose of "
        "gadobutrol. Two neuroradiologists blinded to the clinical data rated each scan independently for white "
        "matter lesions, microbleeds and enlarged perivascular spaces using established visual scales. "
        "Disagreements were resolved by consensus. Inter-rater agreement was substantial for white matter lesions "
        "with a weighted kappa of 0.78 and moderate for microbleeds with a kappa of 0.61. Lesion load correlated "
        "with age and with the duration of hypertension but not with the cognitive scores at inclusion."
    ),
}

# Near-duplicate copies: each must group with its base (and not be an exact duplicate of it).
EDITS = {
    "bp.number": BASE["bp"].replace("9.8 mmHg", "10.4 mmHg"),
    "bp.typo": BASE["bp"].replace("consistent across", "consitent accross"),
    "tb.reordered": BASE["tb"].replace(
        "Resistance was more frequent among previously treated patients than among new cases, and it clustered "
        "in two districts served by the same referral laboratory. These findings support routine molecular "
        "testing at diagnosis in both districts.",
        "These findings support routine molecular testing at diagnosis in both districts. Resistance was more "
        "frequent among previously treated patients than among new cases, and it clustered in two districts "
        "served by the same referral laboratory.",
    ),
    "mri.number": BASE["mri"].replace("kappa of 0.78", "kappa of 0.81").replace("32-channel", "64-channel"),
}

# A template sentence (37 words) that many different paragraphs share.
TEMPLATE = (
    "All procedures performed in studies involving human participants were in accordance with the ethical "
    "standards of the institutional research committee and with the 1964 Helsinki declaration and its later "
    "amendments or comparable ethical standards."
)

_VOCABULARY = (
    "cohort patients serum levels increased decreased treatment therapy response tumour biopsy cells protein "
    "expression gene mutation infection antibody dose weeks months baseline outcome survival risk ratio "
    "clinical trial randomised control group analysis model samples tissue blood plasma receptor pathway "
    "signalling inhibitor mice rats culture assay imaging lesion cardiac renal hepatic pulmonary neural "
    "children adults women men hospital follow-up adverse events mortality incidence prevalence"
)
_WORDS = _VOCABULARY.split()


def distinct_sentence(seed: int, n_words: int = 22) -> str:
    """A different sentence per seed, from a small medical vocabulary."""
    rng = random.Random(seed)
    words = [rng.choice(_WORDS) for _ in range(n_words)]
    return " ".join(words).capitalize() + f" in {seed} cases."


def template_paragraph(seed: int) -> str:
    """A paragraph made of the template sentence and one sentence of its own (template ~60% of it)."""
    return f"{TEMPLATE} {distinct_sentence(seed)}"

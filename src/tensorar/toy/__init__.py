"""The embedded toy (ours, not the paper's): what lets the whole workflow run on a laptop's CPU with no
download, in one package. Numbers measured with it are toy numbers, never compared with the paper's.

    digits            scikit-learn's bundled 8x8 digits as an ImageFolder (`tensorar make_digits`)
    captioned_digits  coloured-digit canvases with captions (GenEval metadata), as a dataset folder
    benchmarks        the toy GenEval / DPG-Bench prompt sets drawn from those captions
    text              a fixed-word-vector text encoder standing in for flan-t5-xl
    features          a small digits classifier standing in for Inception ("toy-FID" features)
    detector          that classifier as the toy benchmarks' detector / question answerer

It sits above `data` and `evaluation` (it writes and answers their formats) and below `models`, whose
text-encoder registry offers the toy encoder; neither `data` nor `evaluation` imports it.
"""

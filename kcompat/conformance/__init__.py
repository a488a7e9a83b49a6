"""The portable conformance suite: export cases with real Keras (export.py), run a candidate on them
(run.py), report as text (text.py), JUnit XML (junit.py) or one HTML page (html.py)."""

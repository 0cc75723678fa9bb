"""``make bench``: the portal's pages against a bare Flask page, at three data sizes.

Run ``python -m bench --help`` for the options; ``bench/README.md`` says what is measured.
"""

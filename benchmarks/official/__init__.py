"""Scripts that run the official PyTorch code (NVlabs/MUNIT, mingyuliutw/UNIT version_02, znxlwm/UGATIT-pytorch).

They need torch and the official repositories, so they run outside the test suite, in a separate torch
environment: `make_fixtures` writes the small fixtures the offline equivalence tests load (tests/official/) and,
with --paper, checks the full-size networks. `source` finds the official files; nothing here is imported by the
product or the tests.
"""

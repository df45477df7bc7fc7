"""Layer 3: the interfaces every component implements, and the protocol between them.

Search spaces and architectures (`space`), strategies (`strategy`), evaluators and results
(`evaluator`), the capabilities an evaluator declares (`capabilities`), the one-shot requests a
strategy sends (`requests`, `paths`), the space capabilities (`multibranch`, `ensemble`), Cream's
board, parameter/MAC costs, and the typed registries. Imports only `common` and `data`; never a
plugin (strategies, spaces, evaluators) and never the layers above.
"""

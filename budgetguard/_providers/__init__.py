"""One module per SDK: the wrappers around its choke points and its wire format.

Only these modules know SDK internals. Each registers its installer with
``budgetguard._context.on_first_scope``, so entering the first scope hooks the SDK (the SDK
itself is imported then, not when budgetguard is).
"""

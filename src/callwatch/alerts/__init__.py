"""Alert rules: the expression language, its fields, windows, the rule store, firing, endpoints."""

"""Promotion: the gate (a plain function), the alias moves it leads to, and
the reports that say why."""

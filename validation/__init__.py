"""Reproductions of the paper's predictions and figures (compute -> plot -> check), and their plots."""

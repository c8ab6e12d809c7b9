"""The paper's claims, one module each (compute -> plot -> check), and the suite that reports them."""

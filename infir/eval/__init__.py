"""infir.eval"""

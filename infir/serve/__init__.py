"""infir.serve"""

"""infir.train"""

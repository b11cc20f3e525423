"""infir.model"""

"""infir.data"""

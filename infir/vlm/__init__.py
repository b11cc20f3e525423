"""infir.vlm"""

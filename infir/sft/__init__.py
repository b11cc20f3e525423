"""infir.sft"""

"""Evaluation: grading (`grading`), batched generation (`generation`), tasks (`tasks/`), the runner.

Entry points: `infir.eval.runner.run_eval(...)`, `infir.eval.generation.load_generator(path_or_url)`,
`infir.eval.grading.extract_answer / math_equal`, `infir.eval.nll.per_token_nll(model, tokenizer, texts)`.
"""

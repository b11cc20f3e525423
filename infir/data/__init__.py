"""infir.data: corpus curation (InfiR §2.1-2.2).

config           typed settings: InputSpec (path/glob + domain + source + language), per-domain step lists, ...
sources          the paper's sources in their release formats (Stack, FineWeb, OpenWebMath, InfiMM, FLAN, ...):
                 family detection, text and domain per row; corpus inputs resolved (globs) and checked up front
records/readers  Record model; JSONL(.gz/.zst/.zstd), JSON, Parquet, WARC/WET (trafilatura), folders -> records with
                 domain, source name and input path; bad input quarantined with a reason
words            spaCy-faithful fast English word splitting (spacy_en_rules, punctuation: data)
heuristics       FineWeb filters (Gopher quality/repetition, C4, FineWeb quality) + math colon rule
code_rules       OpenCoder-style rules: general ones and per language (Python, JavaScript, Java, C), allowlist names
langid           optional fastText lid.176 language id
recall           fastText reasoning-recall classifiers (seeds vs uniform negatives, iterated, routed by priority)
minhash          MinHash signatures, LSH bands, union-find clusters
shards           shards of work: file groups, or record ranges of one big JSONL/Parquet file; streaming sinks
dedup            global MinHash clustering partitioned on disk and across workers, merged by union-find
quality          FineWeb-Edu / FineMath-architecture scorers (transformers), train_scorer, code static analysis
annotate         teacher labels with the FineWeb-Edu / FineMath rubrics over an OpenAI-compatible endpoint
decontam         token 10-gram decontamination against the texts the eval tasks declare
chats            chat release formats (Alpaca, ShareGPT/Infinity-Instruct, OpenAI messages, FLAN, ...) ->
                 Conversation; the SFT room, synthesis and the corpus readers all read chats through it
tokens           tokenized shard format (streaming writers, per domain too; memory-mapped reader) the
                 trainer packs from
mixture          annealing mix by source weights -> text and tokenized shards (via tokens)
steps            the step registry (named steps), per-domain step lists, the plan that runs them, the funnel
pipeline         run_curate: the phases around the dedup barrier (resumable, local or Ray executors)
"""

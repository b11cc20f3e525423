"""infir.data: corpus curation (InfiR §2.1-2.2).

records/readers  Record model; JSONL(.gz/.zst), Parquet, WARC/WET (trafilatura), folders -> records, bad
                 input quarantined with a reason
words            spaCy-faithful fast English word splitting (spacy_en_rules, punctuation: data)
heuristics       FineWeb filters (Gopher quality/repetition, C4, FineWeb quality) + math colon rule
code_rules       OpenCoder-style rules for source files (Python: ast parse)
langid           optional fastText lid.176 language id
recall           fastText reasoning-recall classifiers (seeds vs random negatives, iterated)
minhash          MinHash signatures, LSH bands, union-find clusters
shards           shards of work: file groups, or record ranges of one big JSONL/Parquet file; streaming sinks
dedup            global MinHash clustering partitioned on disk and across workers, merged by union-find
quality          embedding regression heads (web 0-5, math 1-5), code static analysis
decontam         token 10-gram decontamination against the texts the eval tasks declare
chats            chat release formats (Alpaca, ShareGPT, OpenAI messages, ...) -> Conversation; the SFT
                 room, synthesis and the corpus readers all read chats through it
tokens           tokenized shard format (streaming writers, per domain too; memory-mapped reader) the trainer
                 packs from
mixture          annealing mix by source weights -> text and tokenized shards (via tokens)
steps/pipeline   composable steps with a funnel; run_curate (resumable, local or Ray executors)
"""

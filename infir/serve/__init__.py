"""Edge-ready models: serve, chat, export, quantize.

- `server.create_app(model_dir_or_generator, config)`: OpenAI-compatible FastAPI app over the Generation API;
  `runner.run_server` (`infir serve`) and `runner.BackgroundServer` (a loopback server in a thread);
- `batcher.Batcher`: dynamic batching of concurrent requests with a bounded queue;
- `chat.run_chat` (`infir chat`); `export.export_hf` / `export.export_gguf` / `export.run_export` (`infir export`);
- `quantize.quantize_model`: weight-only int8 / int4 for CPU inference.
"""

"""reverie serve: an OpenAI-compatible HTTP service with memory, feedback, background sleep and
hot swap, over per-tenant data directories.

  config.py    ServeConfig (configs/serve*.yaml), API keys from the environment or a file
  tenants.py   Auth, Tenant (memory + the Serving it answers from), swap
  engine.py    the model worker: micro-batched, streamed decoding
  nights.py    night jobs in a child process, the swap after them, the scheduler
  service.py   what each endpoint does
  app.py       the HTTP layer (FastAPI), error shapes in errors.py, metrics.py
  server.py    uvicorn in the foreground or on a thread
"""

"""A small, fast HTTP/1.1 server (asyncio + httptools) shared by the store and the engine."""

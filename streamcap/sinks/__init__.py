"""Where captions go: files (:mod:`.files`, formatted by :mod:`.captions`), the WebSocket server
and overlay (:mod:`.websocket`) and OBS (:mod:`.obs`)."""

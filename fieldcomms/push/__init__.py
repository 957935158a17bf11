"""Web Push to officers' handsets (RFC 8030, payload RFC 8291 aes128gcm, VAPID RFC 8292).

`endpoints` decides where a push may go (https on public addresses only), `vapid` keeps the deployment's key,
`sender` posts from a bounded pool on its own thread, `service` turns an alert's new recipients into pushes.
"""

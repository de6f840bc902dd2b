// Talks to leadq's admin API: keeps the token, turns every failure into a sentence a person can
// read, and follows the live event stream (fetch, so the token goes in a header, not the URL).
import { reactive } from 'vue'

const saved = JSON.parse(sessionStorage.getItem('leadq.session') || 'null')
export const session = reactive({
  token: saved?.token || null,
  username: saved?.username || null,
  role: saved?.role || null,
})

const may = {
  admin: ['read', 'command', 'manage'],
  cmo_agent: ['read', 'command'],
  viewer: ['read'],
}
export const can = (access) => (may[session.role] || []).includes(access)

export function signIn({ access_token, username, role }) {
  Object.assign(session, { token: access_token, username, role })
  sessionStorage.setItem('leadq.session', JSON.stringify(session))
}

export function signOut() {
  Object.assign(session, { token: null, username: null, role: null })
  sessionStorage.removeItem('leadq.session')
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message)
    this.status = status
    this.body = body
  }
}

function explain(status, body) {
  const said = body && typeof body.error === 'string' ? body.error : null
  const detail = body && body.detail ? ` (${body.detail})` : ''
  if (status === 401) return said ? `Not signed in: ${said}.` : 'Your session has ended; sign in again.'
  if (status === 403) return said ? `Not allowed: ${said}.` : 'Your role may not do this.'
  if (status === 429) return said ? `${said}.` : 'Too many attempts; wait a moment.'
  if (status >= 500) return said ? `The server could not do this: ${said}.` : 'The server failed; try again shortly.'
  return (said || `Request failed (${status})`) + detail
}

export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' }
  if (session.token) headers.Authorization = `Bearer ${session.token}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  let response
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  } catch {
    throw new ApiError(0, 'Cannot reach leadq: is it running, and is this network up?')
  }
  const text = await response.text()
  let data = null
  try { data = text ? JSON.parse(text) : null } catch { data = null }
  if (!response.ok) {
    if (response.status === 401 && path !== '/api/auth/login') signOut()
    throw new ApiError(response.status, explain(response.status, data), data)
  }
  return data
}

// Calls onEvent(subject, data) for each server-sent event until the returned stop() is called.
export function followEvents(onEvent, onState) {
  const controller = new AbortController()
  let stopped = false
  async function run() {
    while (!stopped) {
      try {
        const response = await fetch('/api/admin/events', {
          headers: { Authorization: `Bearer ${session.token}`, Accept: 'text/event-stream' },
          signal: controller.signal,
        })
        if (!response.ok) throw new Error(`events: ${response.status}`)
        onState?.('live')
        const reader = response.body.getReader()
        const decoder = new TextDecoder()
        let buffer = ''
        for (;;) {
          const { value, done } = await reader.read()
          if (done) break
          buffer += decoder.decode(value, { stream: true })
          let end
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            let event = 'message'
            const data = []
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim()
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
            }
            if (data.length) {
              try { onEvent(event, JSON.parse(data.join('\n'))) } catch { /* not JSON: ignore */ }
            }
          }
        }
      } catch {
        if (stopped) return
      }
      onState?.('reconnecting')
      await new Promise((resolve) => setTimeout(resolve, 2000))
    }
  }
  run()
  return () => { stopped = true; controller.abort() }
}

import { useState } from 'react'
import { validId } from '@parley/client'
import { useStore } from '../hooks'

/** Sign in, or create an account. */
export function Auth() {
  const store = useStore()
  const [mode, setMode] = useState<'signin' | 'signup'>('signin')
  const [id, setId] = useState('')
  const [name, setName] = useState('')
  const [password, setPassword] = useState('')
  const [error, setError] = useState('')
  const [busy, setBusy] = useState(false)

  const user = id.trim().toLowerCase()
  const submit = async (ev: React.FormEvent) => {
    ev.preventDefault()
    setError('')
    if (!validId(user)) {
      setError('A user id is 1–64 lower-case letters, digits, dots, dashes or underscores, starting with a letter or digit.')
      return
    }
    // Sign-up only: accounts made before the 10-character rule still sign in.
    if (mode === 'signup' && [...password].length < 10) {
      setError('The password needs at least 10 characters, not all spaces, and not a common one.')
      return
    }
    setBusy(true)
    try {
      if (mode === 'signup') await store.client.signUp(user, password, name.trim() || user)
      else await store.client.signIn(user, password)
    } catch (err) {
      const msg = (err as Error).message
      setError(
        mode === 'signin' && /bad credentials/.test(msg)
          ? 'Wrong user id or password.'
          : /taken|exists/.test(msg)
            ? `The user id “${user}” is taken.`
            : msg.charAt(0).toUpperCase() + msg.slice(1),
      )
    } finally {
      setBusy(false)
    }
  }

  return (
    <main className="auth">
      <form className="auth-card" onSubmit={submit} aria-labelledby="auth-title">
        <div className="brand">
          <img src="/favicon.svg" alt="" width={48} height={48} />
          <h1 id="auth-title">Parley</h1>
        </div>
        <div className="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={mode === 'signin'} className={mode === 'signin' ? 'active' : ''} onClick={() => setMode('signin')}>
            Sign in
          </button>
          <button type="button" role="tab" aria-selected={mode === 'signup'} className={mode === 'signup' ? 'active' : ''} onClick={() => setMode('signup')}>
            Create account
          </button>
        </div>
        <label>
          User id
          <input name="user" autoComplete="username" autoCapitalize="none" spellCheck={false} value={id} onChange={(e) => setId(e.target.value)} placeholder="alice" autoFocus required />
        </label>
        {mode === 'signup' && (
          <label>
            Your name
            <input name="name" autoComplete="name" value={name} onChange={(e) => setName(e.target.value)} placeholder="Alice Liddell" />
          </label>
        )}
        <label>
          Password
          <input name="password" type="password" autoComplete={mode === 'signup' ? 'new-password' : 'current-password'} value={password} onChange={(e) => setPassword(e.target.value)} minLength={mode === 'signup' ? 10 : undefined} maxLength={72} required />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button className="primary" type="submit" disabled={busy}>
          {busy ? 'Please wait…' : mode === 'signup' ? 'Create account' : 'Sign in'}
        </button>
      </form>
    </main>
  )
}

// The wire contract, both sides: the Go tests write golden fixtures of
// every entry type, presence payload, client publish and HTTP answer
// (protocol/testdata/golden; go test ./protocol ./broker -run Golden
// -update), and this suite decodes every one with the SDK's decoders.
import { describe, expect, expectTypeOf, it } from 'vitest'
import { ApiError, ParleyApi } from './api.js'
import { golden, goldenFiles } from './fakes.js'
import {
  entryTypes,
  type Entry,
  type ErrorEntry,
  type GroupCreatedEntry,
  type HistoryChangedEntry,
  type MemberAddedEntry,
  type MemberRemovedEntry,
  type MsgEntry,
  type ReadEntry,
  type ReceiptEntry,
  type RenamedEntry,
  type TypingEntry,
  type UnknownEntry,
} from './types.js'
import { decodeEntry, decodeGroup, decodePresence, encodeMessage, encodePresenceStatus, encodeRead, encodeTyping } from './wire.js'

/** What each type's own fields say, read through the narrowed union: a switch that must cover every type. */
function describeEntry(e: Entry): string {
  switch (e.type) {
    case 'msg':
      expectTypeOf(e).toEqualTypeOf<MsgEntry>()
      return `msg ${e.cid ?? '-'} ${String(e.body.text ?? Object.keys(e.body).join('+'))}`
    case 'receipt':
      expectTypeOf(e).toEqualTypeOf<ReceiptEntry>()
      return `receipt ${e.status} ${e.by ?? `${e.count}/${e.of}`} ${e.for} ${e.ids.length}`
    case 'error':
      expectTypeOf(e).toEqualTypeOf<ErrorEntry>()
      return `error ${e.code} ${e.topic} ${e.suppressed ?? 0}`
    case 'typing':
      expectTypeOf(e).toEqualTypeOf<TypingEntry>()
      return `typing ${e.from}`
    case 'read':
      expectTypeOf(e).toEqualTypeOf<ReadEntry>()
      return `read ${e.for} ${e.with ?? '-'} ${e.read_seq}`
    case 'group_created':
      expectTypeOf(e).toEqualTypeOf<GroupCreatedEntry>()
      return `group_created ${e.by} ${e.name}`
    case 'member_added':
      expectTypeOf(e).toEqualTypeOf<MemberAddedEntry>()
      return `member_added ${e.by} ${e.user} ${e.for ?? '-'}`
    case 'member_removed':
      expectTypeOf(e).toEqualTypeOf<MemberRemovedEntry>()
      return `member_removed ${e.by} ${e.user} ${e.for ?? '-'}`
    case 'renamed':
      expectTypeOf(e).toEqualTypeOf<RenamedEntry>()
      return `renamed ${e.by} ${e.name}`
    case 'history_changed':
      expectTypeOf(e).toEqualTypeOf<HistoryChangedEntry>()
      return `history_changed ${e.by} ${e.history}`
    case 'unknown':
      expectTypeOf(e).toEqualTypeOf<UnknownEntry>()
      return `unknown ${e.wireType}`
    default: {
      const never: never = e
      return never
    }
  }
}

describe('golden entries', () => {
  it('has a fixture for every entry type the SDK knows, and knows every type of the fixtures', () => {
    expect(goldenFiles('entries').map((f) => f.replace(/\.json$/, ''))).toEqual([...entryTypes].sort())
  })

  for (const type of entryTypes) {
    it(`decodes every ${type} entry, all its fields, into its own type`, () => {
      const raw = golden(`entries/${type}.json`) as Record<string, unknown>[]
      expect(raw.length).toBeGreaterThan(0)
      for (const r of raw) {
        const e = decodeEntry(r)
        expect(e?.type).toBe(type)
        // Nothing the server sends is lost or added: the types cover it all.
        expect(e).toEqual(r)
        expect(describeEntry(e!).split(' ')[0]).toBe(type)
      }
    })
  }

  it('reads what each type says', () => {
    const all = entryTypes.flatMap((t) => (golden(`entries/${t}.json`) as unknown[]).map((r) => describeEntry(decodeEntry(r)!)))
    expect(all).toEqual([
      'msg c-1 hi bob',
      'msg c-1 hi bob',
      'msg - 5 > 3 & <b>ok</b> "quoted" ☀️ é\n',
      'msg c-2 photo',
      'receipt delivered bob u/bob 2',
      'receipt read bob u/bob 1',
      'receipt delivered 2/5 g/k3x7q2m9wz 1',
      'receipt read 5/5 g/k3x7q2m9wz 1',
      'error 135 u/bob 0',
      'error 144 random/topic 3',
      'typing alice',
      'typing bob',
      'read u/bob alice 3',
      'read g/k3x7q2m9wz - 8',
      'group_created alice Trip',
      'member_added alice dave -',
      'member_added alice dave g/k3x7q2m9wz',
      'member_removed carol carol -',
      'member_removed alice dave -',
      'member_removed alice dave g/k3x7q2m9wz',
      'renamed bob Road trip',
      'history_changed alice full',
    ])
  })

  it('keeps an entry of a type it does not know, with its place in the inbox', () => {
    const raw = { id: 'x', inbox: 'u/bob', seq: 9, from: 'alice', to: 'bob', ts: 1, type: 'poll', question: 'lunch?' }
    const e = decodeEntry(raw)!
    expect(e).toEqual({ id: 'x', inbox: 'u/bob', seq: 9, from: 'alice', to: 'bob', ts: 1, type: 'unknown', wireType: 'poll', question: 'lunch?' })
    expect(describeEntry(e)).toBe('unknown poll')
  })

  it('refuses what has no header, and fills what a known type lacks', () => {
    expect(decodeEntry({ type: 'msg', body: {} })).toBeUndefined()
    expect(decodeEntry('hello')).toBeUndefined()
    expect(decodeEntry({ id: 'a', inbox: 'u/bob', seq: 1, from: 'alice', to: 'bob', ts: 1, type: 'msg', body: 'text' })).toEqual({
      id: 'a',
      inbox: 'u/bob',
      seq: 1,
      from: 'alice',
      to: 'bob',
      ts: 1,
      type: 'msg',
      body: {},
    })
    // Fields are read by their names only: a missing `by` is not guessed from `from`.
    const h = { id: 'b', inbox: 'g/team', seq: 2, from: 'alice', to: 'team', ts: 2 }
    expect(decodeEntry({ ...h, type: 'member_added', user: 'bob' })).toEqual({ ...h, type: 'member_added', by: '', user: 'bob' })
    expect(decodeEntry({ ...h, type: 'renamed' })).toEqual({ ...h, type: 'renamed', by: '', name: '' })
    expect(decodeGroup({ id: 'team', name: 'Team' })?.history).toBe('')
  })
})

describe('golden presence', () => {
  it('decodes every presence payload as it came', () => {
    const raw = golden('presence.json') as unknown[]
    expect(raw.map(decodePresence)).toEqual(raw)
  })
})

describe('golden submissions', () => {
  // The Go test parses each of these with protocol.ParseSubmission.
  const wire = (name: string) => JSON.stringify(golden(`submissions/${name}.json`))
  it('encodes what clients publish as the server reads it', () => {
    expect(encodeMessage('c-1', { text: 'hi bob' })).toBe(wire('msg'))
    expect(encodeTyping()).toBe(wire('typing'))
    expect(encodeRead('u/bob', 57, 'alice')).toBe(wire('read-direct'))
    expect(encodeRead('g/k3x7q2m9wz', 12)).toBe(wire('read-group'))
    expect(encodePresenceStatus('online')).toBe(wire('presence-online'))
    expect(encodePresenceStatus('away')).toBe(wire('presence-away'))
  })
  it('has no submission fixture it does not encode', () => {
    expect(goldenFiles('submissions')).toEqual(
      ['msg', 'presence-away', 'presence-online', 'read-direct', 'read-group', 'typing'].map((n) => `${n}.json`),
    )
  })
})

describe('golden API answers', () => {
  // Each answer is served from its fixture; the SDK's method must ask for
  // the right route and give back everything the server said.
  const requests: string[] = []
  let answer: { status: number; file: string } = { status: 200, file: '' }
  const api = new ParleyApi('', async (url, init) => {
    requests.push(`${init?.method ?? 'GET'} ${url}${init?.body ? ` ${init.body}` : ''}`)
    const body = JSON.stringify(golden(`api/${answer.file}.json`))
    return { status: answer.status, ok: answer.status < 300, text: async () => body }
  })
  api.token = 'token-bob-web'

  const used = new Set<string>()
  async function served<T>(file: string, call: () => Promise<T>, status = 200): Promise<{ got: T; raw: any; request: string }> {
    used.add(`${file}.json`)
    answer = { status, file }
    requests.length = 0
    const got = await call()
    return { got, raw: golden(`api/${file}.json`), request: requests.join('\n') }
  }

  it('signs up and in', async () => {
    const up = await served('signup', () => api.signUp('bob', 'password-bob', 'Bob'), 201)
    expect(up.got).toEqual(up.raw)
    expect(up.request).toBe('POST /v1/users {"id":"bob","password":"password-bob","name":"Bob"}')
    const signIn = await served('signin', () => api.signIn('bob', 'password-bob'))
    expect(signIn.got).toEqual({ id: 'bob', token: signIn.raw.token })
    expect(api.token).toBe('token-bob-web')
  })

  it('reads users, deleted ones too', async () => {
    const me = await served('me', () => api.me())
    expect(me.got).toEqual(me.raw)
    const gone = await served('user-deleted', () => api.user('frank'))
    expect(gone.got).toEqual(gone.raw)
    expect(gone.got.deleted).toBe(true)
    expect(gone.request).toBe('GET /v1/users/frank')
  })

  it('pages through history', async () => {
    for (const [file, inbox, opts, query] of [
      ['messages', 'u/bob', {}, 'inbox=u%2Fbob'],
      ['messages-sender', 'u/alice', {}, 'inbox=u%2Falice'],
      ['messages-group', 'g/k3x7q2m9wz', {}, 'inbox=g%2Fk3x7q2m9wz'],
      ['messages-group-older', 'g/k3x7q2m9wz', { before: 4, limit: 2 }, 'inbox=g%2Fk3x7q2m9wz&before=4&limit=2'],
      ['messages-removed-member', 'g/k3x7q2m9wz', { after: 0 }, 'inbox=g%2Fk3x7q2m9wz&after=0'],
    ] as const) {
      const page = await served(file, () => api.messages(inbox, opts))
      expect(page.request).toBe(`GET /v1/messages?${query}`)
      expect(page.got).toEqual(page.raw)
      expect(page.got.entries.every((e) => e.type !== 'unknown')).toBe(true)
    }
  })

  it('reads the chat list, each conversation with its key', async () => {
    const c = await served('conversations', () => api.conversations())
    expect(c.got).toEqual(c.raw.conversations.map((r: any) => ({ ...r, key: r.group ? `g/${r.group}` : `u/${r.peer}` })))
    expect(c.got.map((x) => [x.key, x.unread, x.read_seq, x.last?.type])).toEqual([
      ['g/k3x7q2m9wz', 1, 0, 'msg'],
      ['u/alice', 0, 2, 'read'],
    ])
  })

  it('reads and changes groups', async () => {
    const created = await served('group-created', () => api.createGroup('Trip', ['bob', 'carol']), 201)
    expect(created.got).toEqual(created.raw)
    expect(created.request).toBe('POST /v1/groups {"name":"Trip","members":["bob","carol"]}')
    const g = await served('group', () => api.group('k3x7q2m9wz'))
    expect(g.got).toEqual(g.raw)
    const mine = await served('groups', () => api.myGroups())
    expect(mine.got).toEqual(mine.raw.groups)
  })

  it('reads presence and its privacy', async () => {
    const p = await served('presence', () => api.presence(['bob', 'carol', 'frank', 'erin', 'zed']))
    expect(p.request).toBe('GET /v1/presence?users=bob,carol,frank,erin,zed')
    expect(p.got).toEqual(p.raw.users)
    const privacy = await served('presence-privacy', () => api.presencePrivacy())
    expect(privacy.got).toBe('contacts')
  })

  it('reads blocks, contacts and consent', async () => {
    const blocks = await served('blocks', () => api.blocks())
    expect(blocks.got).toEqual(blocks.raw.blocks)
    const contacts = await served('contacts', () => api.contacts())
    expect(contacts.got).toEqual(contacts.raw.contacts)
    expect(contacts.got.map((c) => c.user)).toEqual(['alice', 'carol'])
    const consent = await served('consent', () => api.groupAdds())
    expect(consent.got).toBe('contacts')
  })

  it('reads sessions', async () => {
    const s = await served('sessions', () => api.sessions())
    expect(s.got).toEqual(s.raw.sessions)
    expect(s.got.map((x) => [x.current, x.connections.map((c) => c.client_id)])).toEqual([
      [true, []],
      [false, ['bob/phone']],
    ])
  })

  it('registers push tokens and reads push settings', async () => {
    const reg = await served('device-registered', () => api.registerPushToken({ platform: 'fcm', token: 'fcm-token-of-bobs-phone', device: 'bob/phone' }))
    expect(reg.got).toEqual(reg.raw)
    expect(reg.request).toBe('POST /v1/devices {"platform":"fcm","token":"fcm-token-of-bobs-phone","device":"bob/phone"}')
    const list = await served('devices', () => api.pushTokens())
    expect(list.got).toEqual(list.raw.devices)
    const settings = await served('push', () => api.pushSettings())
    expect(settings.got).toEqual(settings.raw)
  })

  it('reports the server error text', async () => {
    const err = await served('error', () => api.messages('u/alice').catch((e: unknown) => e), 403)
    expect(err.got).toBeInstanceOf(ApiError)
    expect((err.got as ApiError).status).toBe(403)
    expect((err.got as ApiError).message).toBe(err.raw.error)
  })

  it('decodes every API fixture', () => {
    expect([...used].sort()).toEqual(goldenFiles('api'))
  })
})

"""What every page stands on: the running page's memory (`page.Page`) and the gateway as the page
sees it (`gateway.Gateway`); who is asking (`auth`, `csrf`, `doors`, `cookies`, `security`,
`access`, `users`, `tokens`, `lockout`, `passkeys`, `totp`); and how things are said and drawn
(`render`, `words`, `fact_words`, `views`, `overview`, `availability`, `trying`). It imports no
page: the pages, `app` (which joins them) and `server` (its listeners) are in webview/ above it."""

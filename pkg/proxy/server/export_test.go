package server

// PoolPeekAfterForTest exposes poolPeekAfter to the external tests.
const PoolPeekAfterForTest = poolPeekAfter

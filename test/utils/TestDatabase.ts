/** The test databases, from the test graph (layers/Test.ts), where scripts find them too. */
export {
  allTestDatabases,
  EmbeddedTestDatabase,
  PostgresTestDatabase,
  TestDatabaseLive,
  testDatabaseUrl
} from "../../layers/Test.ts"
